"""The otv gateway: authenticates partners, routes each call to its practice's adapter.

Depends on `otv_sdk`; the SDK never depends on it.
"""

from gateway.app import Gateway, run_gateway
from gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigError", "Gateway", "GatewayConfig", "load_config", "run_gateway"]
