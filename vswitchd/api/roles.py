"""Who may call what: the role each RPC needs, read from the .proto's `(vswitchd.v1.role)` method
option (the one contract clients read too). An RPC without the option needs admin; methods of
other services (health, reflection) need no role."""

from __future__ import annotations

from typing import Literal

from vswapi import switch_pb2 as pb

Role = Literal["reader", "admin"]
ROLES: tuple[Role, ...] = ("reader", "admin")
_BY_OPTION: dict[int, Role] = {pb.ROLE_READER: "reader", pb.ROLE_ADMIN: "admin"}

SWITCH = pb.DESCRIPTOR.services_by_name["Switch"]


def _table() -> dict[str, Role]:
    """'/vswitchd.v1.Switch/Method' -> the role it needs (unspecified: admin)."""
    return {f"/{SWITCH.full_name}/{m.name}":
            _BY_OPTION.get(m.GetOptions().Extensions[pb.role], "admin")
            for m in SWITCH.methods}


REQUIRED: dict[str, Role] = _table()
_PREFIX = f"/{SWITCH.full_name}/"


def required(method: str) -> Role | None:
    """The role METHOD (a gRPC path) needs; None for methods outside the Switch service. A
    Switch method the table does not know (a newer client's) needs admin."""
    if not method.startswith(_PREFIX):
        return None
    return REQUIRED.get(method, "admin")


def allows(role: Role | None, needed: Role) -> bool:
    return role == "admin" or (role == "reader" and needed == "reader")
