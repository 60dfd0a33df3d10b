# pragma version ~=0.4.3
"""
@title Ownable
@custom:contract-name ownable
@notice Single-owner access control, shared by the idlegrid contracts as a
        Vyper 0.4 module (`initializes: ownable`).
"""

owner: public(address)


event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


@deploy
def __init__():
    self._transfer_ownership(msg.sender)


@external
def transfer_ownership(new_owner: address):
    """
    @notice Hand the owner role to `new_owner`.
    @param new_owner The next owner; must not be the zero address.
    """
    self._check_owner()
    assert new_owner != empty(address), "ownable: new owner is the zero address"
    self._transfer_ownership(new_owner)


@internal
@view
def _check_owner():
    assert msg.sender == self.owner, "ownable: caller is not the owner"


@internal
def _transfer_ownership(new_owner: address):
    previous: address = self.owner
    self.owner = new_owner
    log OwnershipTransferred(previous_owner=previous, new_owner=new_owner)
