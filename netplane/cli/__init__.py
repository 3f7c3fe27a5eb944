"""The `netplane` command line (click groups in `main`; one module per group).

gRPC's C core logs connection failures (a refused TLS handshake, an unreachable endpoint) on
stderr on its own, before our one-line error says the same with its cause. Its verbosity can only
be set before `grpc` is first imported, which the CLI does through `netplane.store`; so the CLI
package sets it here, unless the environment already chose (GRPC_VERBOSITY=ERROR shows them).
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
