"""The `otv` command line: composes the gateway, the SDK and (later) the conformance suite."""
