"""gRPC health check over TLS, for a Kubernetes exec probe (the kubelet's gRPC probe cannot do TLS).

    python grpc_health_probe.py --port 50051 --server-name faceflow-ingest \
        [--tls-dir /var/run/secrets/faceflow/grpc-tls] [--service ""] [--timeout 3]

Calls ``grpc.health.v1.Health/Check`` on 127.0.0.1:PORT over TLS and exits 0 when the answer is
SERVING, 1 otherwise (the reason on stderr). ``ca.crt`` in the TLS folder verifies the server as
``--server-name``; ``tls.crt`` / ``tls.key`` are presented as the client certificate, which a
server that requires mTLS (``FACEFLOW_TLS_CLIENT_CA_FILE``) accepts when one CA signs both. Health
is exempt from the bearer token. Needs only grpcio and grpcio-health-checking (in the image).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # the probe's message says what failed; no C-core log

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-name", required=True, help="a DNS name in the server's certificate")
    p.add_argument("--tls-dir", type=Path, default=Path("/var/run/secrets/faceflow/grpc-tls"))
    p.add_argument("--service", default="", help='health service name (default "": the whole server)')
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    try:
        ca, cert, key = ((args.tls_dir / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key"))
    except OSError as exc:
        sys.stderr.write(f"grpc health probe: {exc}\n")
        return 1
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", args.server_name)]
    with grpc.secure_channel(f"127.0.0.1:{args.port}", credentials, options=options) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            sys.stderr.write(f"grpc health probe: {exc.code().name}: {exc.details()}\n")
            return 1
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        sys.stderr.write(f"grpc health probe: {args.service or 'server'} is {status}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
