"""Who may use the console, and as what.

Without an identity provider the console trusts whoever reaches it, so it binds to 127.0.0.1 by
default; the local user there is an admin. A console bound to any other address without a provider
gives every visitor the viewer role.

With an OpenID Connect provider configured in Streamlit's ``secrets.toml`` (its ``[auth]`` section:
``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret``, ``server_metadata_url``; see
Streamlit's ``st.login``), every page requires a login, and the user's role comes from one claim of
their ID token, named in the console's config (``auth.role_claim``, default ``groups``): a user any of
whose claim values is listed in ``auth.admin`` is an admin, everyone else a viewer.

Roles: ``viewer`` reads every page and runs the audit query pack; ``admin`` may also type free-form
(read-only) Cypher on the Audit page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from fleetscope.console.settings import AuthSettings

ADMIN, VIEWER = "admin", "viewer"
#: Session-state key holding the role of the current browser session.
ROLE_KEY = "fleetscope.role"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def provider_configured() -> bool:
    """Whether Streamlit's ``secrets.toml`` has an ``[auth]`` section (an OIDC provider)."""
    try:
        return "auth" in st.secrets
    except StreamlitSecretNotFoundError:  # no secrets.toml at all
        return False


def claim_values(claims: Mapping[str, Any], claim: str) -> set[str]:
    """The values of one ID-token claim: a list of strings, or one string of space- or comma-separated
    values (both shapes occur: Keycloak and Entra ID send lists, some providers a scope-like string)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return {part for part in value.replace(",", " ").split() if part}
    if isinstance(value, list | tuple):
        return {str(part) for part in value}
    return set()


def role_of(claims: Mapping[str, Any], config: AuthSettings) -> str:
    """``admin`` when any value of the configured claim is one of ``config.admin``, else ``viewer``."""
    return ADMIN if claim_values(claims, config.role_claim) & set(config.admin) else VIEWER


def gate(config: AuthSettings) -> str:
    """Decide the session's role, or show the login and stop the page when a login is required.

    Returns:
        The role, also kept in ``st.session_state[ROLE_KEY]``.
    """
    if not provider_configured():
        address = st.get_option("server.address")
        role = ADMIN if address in _LOOPBACK else VIEWER
    elif not st.user.is_logged_in:
        st.title("fleetscope")
        st.write("This console requires a login.")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    else:
        role = role_of(st.user.to_dict(), config)
        st.sidebar.caption(f"{st.user.get('email') or st.user.get('name') or 'signed in'} · {role}")
        st.sidebar.button("Log out", on_click=st.logout)
    st.session_state[ROLE_KEY] = role
    return role
