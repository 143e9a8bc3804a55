"""Operations shared by the user and channel verbs (offboard, erase, archive-stale)."""

from __future__ import annotations

from pyinfra.api.exceptions import DeployError

from tasks.state import read as read_server_state


def housekeeping_state(host_name: str) -> dict:
    state = read_server_state(housekeeping=True).get("housekeeping") or {}
    if state.get("error"):
        raise DeployError(f"{host_name}: cannot read users and channels: {state['error']}")
    return state


def find_user(state: dict, username: str, host_name: str) -> dict:
    for user in state.get("users", []):
        if user["username"] == username:
            return user
    raise DeployError(f"{host_name}: there is no user {username!r} (see `make users`); nothing was changed")
