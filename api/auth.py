"""Who may do what: roles, the part of the city a token covers, and the rights each route asks for.

A token has one role and one scope: a grid code prefix naming the district (区中心, 6 digits), a street
(街道中心, 9) or a community (社区工作站, 12). A caller sees and acts only on cases, devices, cameras and
cells under its scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from domain.gridcode import COMMUNITY_DIGITS, COUNTY_DIGITS, STREET_DIGITS


class Role(StrEnum):
    """What a caller is: each role has the rights listed in `RIGHTS`."""

    VIEWER = "viewer"  # dashboards, other systems: read everything in scope
    OPERATOR = "operator"  # camera operators: review detections
    COMMANDER = "commander"  # command center (指挥中心): run cases through the closed loop
    DEVICE_ADMIN = "device-admin"  # the device registry and its secrets
    ADMIN = "admin"  # everything


class Right(StrEnum):
    """What a route asks of its caller."""

    READ = "read"
    REVIEW = "review"  # confirm or dismiss camera detections, undo that decision
    ACT = "act"  # case actions: file, dispatch, handle, verify, ...
    REGISTRY = "registry"  # enable or disable devices
    OPS = "ops"  # /metrics and /docs from another machine


RIGHTS: Mapping[Role, frozenset[Right]] = MappingProxyType({
    Role.VIEWER: frozenset({Right.READ}),
    Role.OPERATOR: frozenset({Right.READ, Right.REVIEW}),
    Role.COMMANDER: frozenset({Right.READ, Right.REVIEW, Right.ACT}),
    Role.DEVICE_ADMIN: frozenset({Right.READ, Right.REGISTRY, Right.OPS}),
    Role.ADMIN: frozenset(Right),
})

#: Lengths a scope may have, and the level each names.
SCOPE_LEVELS: Mapping[int, str] = MappingProxyType({
    COUNTY_DIGITS: "district",
    COUNTY_DIGITS + STREET_DIGITS: "street",
    COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS: "community",
})


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid token."""

    token_id: str
    name: str
    role: Role
    scope: str  # grid code prefix

    @property
    def actor(self) -> str:
        """How the caller appears in a case's timeline: its token's name and id."""
        return f"{self.name} ({self.token_id})"

    @property
    def level(self) -> str:
        """district, street or community."""
        return SCOPE_LEVELS.get(len(self.scope), "cell")

    def may(self, right: Right) -> bool:
        """Whether the role grants `right`."""
        return right in RIGHTS[self.role]

    def covers(self, grid_code: str) -> bool:
        """Whether a cell (or a finer prefix) is within the caller's scope."""
        return grid_code.startswith(self.scope)

    def narrow(self, prefix: str | None) -> str | None:
        """The prefix to filter by: the caller's scope, narrowed by `prefix`; None if they do not overlap."""
        if not prefix:
            return self.scope
        if prefix.startswith(self.scope):
            return prefix
        return self.scope if self.scope.startswith(prefix) else None


def scope_error(scope: str, known_prefix: bool) -> str | None:
    """Why `scope` cannot be a token's scope, or None if it can."""
    if not (scope.isascii() and scope.isdigit()) or len(scope) not in SCOPE_LEVELS:
        return (f"scope {scope!r:.40} must be a district (6 digits), street (9) or community (12) code, "
                f"e.g. 310104003")
    if not known_prefix:
        return f"scope {scope} names no grid cell of this city"
    return None
