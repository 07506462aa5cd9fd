"""Stand-ins for what the local stack has no real copy of.

The PowerLeads sandbox API, HighLevel's signing sender, a fault proxy, the Lambda runtime's
loader and context, and the start/stop base of the local HTTP servers.
"""

__all__ = ["faultproxy", "lambda_context", "lambda_loader", "sandbox", "server", "signing"]
