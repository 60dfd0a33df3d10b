/* Keep CPython's freed frame-stack chunks for reuse (a workaround for
 * https://github.com/python/cpython/issues/142183, unfixed on 3.11 and 3.12).
 *
 * CPython 3.11 keeps a thread's Python frames in 16 KiB chunks that it maps and
 * unmaps through the object arena allocator.  A call loop that sits at a chunk's
 * edge (py-evm's interpreter does, under pytest's and hypothesis's frames) maps
 * and unmaps a chunk on every call: millions of mmap/munmap pairs a test, and on
 * a machine where those are dear, half a contract test's time.  This allocator
 * hands freed blocks of at most CACHED_MAX bytes back out instead of unmapping
 * them (at most CACHE_SLOTS of them, 2 MiB), and passes everything else through
 * to the allocator it replaces, so arenas mapped before it was installed are
 * still unmapped by the allocator that mapped them.
 *
 * Called with the GIL held (the arena allocator always is on a GIL build), so it
 * needs no lock; the loader refuses free-threaded builds.
 */
#include <Python.h>

#define CACHE_SLOTS 32
#define CACHED_MAX (64 * 1024)

static PyObjectArenaAllocator previous;
static void *blocks[CACHE_SLOTS];
static size_t sizes[CACHE_SLOTS];
static int cached;
static unsigned long long reused;
static int installed;

static void *
cache_alloc(void *ctx, size_t size)
{
    (void)ctx;
    for (int i = cached - 1; i >= 0; i--) {
        if (sizes[i] == size) {
            void *block = blocks[i];
            cached--;
            blocks[i] = blocks[cached];
            sizes[i] = sizes[cached];
            reused++;
            return block;
        }
    }
    return previous.alloc(previous.ctx, size);
}

static void
cache_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (size <= CACHED_MAX && cached < CACHE_SLOTS) {
        blocks[cached] = ptr;
        sizes[cached] = size;
        cached++;
        return;
    }
    previous.free(previous.ctx, ptr, size);
}

/* Install once; returns 1 if this call installed it, 0 if it already was. */
int
stackcache_install(void)
{
    if (installed) {
        return 0;
    }
    PyObject_GetArenaAllocator(&previous);
    PyObjectArenaAllocator mine = {NULL, cache_alloc, cache_free};
    PyObject_SetArenaAllocator(&mine);
    installed = 1;
    return 1;
}

/* How many allocations were served from the cache (for the suite's own test). */
unsigned long long
stackcache_reused(void)
{
    return reused;
}
