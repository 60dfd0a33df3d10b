# pragma version ~=0.4.3
"""
@title Ownable (two-step)
@custom:contract-name ownable
@notice Single-owner access control, shared by the idlegrid contracts as a
        Vyper 0.4 module (`initializes: ownable`). Handing the role over takes
        two steps: the owner proposes (`transfer_ownership`) and the proposed
        owner takes it (`accept_ownership`), so a typo in an address can never
        give the role to a key nobody holds.
"""

owner: public(address)
# the proposed next owner; the zero address when no transfer is under way
pending_owner: public(address)


event OwnershipTransferStarted:
    previous_owner: indexed(address)
    new_owner: indexed(address)


event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


@deploy
def __init__():
    self._transfer_ownership(msg.sender)


@external
def transfer_ownership(new_owner: address):
    """
    @notice Propose `new_owner` as the next owner; it becomes owner when it
            calls `accept_ownership`. Owner only. Proposing the zero address
            cancels a transfer under way.
    @param new_owner The proposed owner.
    """
    self._check_owner()
    self.pending_owner = new_owner
    log OwnershipTransferStarted(previous_owner=self.owner, new_owner=new_owner)


@external
def accept_ownership():
    """
    @notice Take the owner role proposed to the caller by `transfer_ownership`.
    """
    assert msg.sender == self.pending_owner, "ownable: caller is not the pending owner"
    self._transfer_ownership(msg.sender)


@internal
@view
def _check_owner():
    assert msg.sender == self.owner, "ownable: caller is not the owner"


@internal
def _transfer_ownership(new_owner: address):
    previous: address = self.owner
    self.owner = new_owner
    self.pending_owner = empty(address)
    log OwnershipTransferred(previous_owner=previous, new_owner=new_owner)
