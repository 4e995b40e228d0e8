"""Dependencies that routes declare: the caller's role, the database engine, the city."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from api.auth import Role, token_hash
from domain.city import City

_bearer = HTTPBearer(auto_error=False)


def _role(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Role:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    role: Role | None = request.app.state.token_roles.get(token_hash(credentials.credentials))
    if role is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return role


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _city(request: Request) -> City:
    city: City = request.app.state.city
    return city


CurrentRole = Annotated[Role, Depends(_role)]
EngineDep = Annotated[Engine, Depends(_engine)]
CityDep = Annotated[City, Depends(_city)]
