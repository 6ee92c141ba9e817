"""Generated protobuf and gRPC code for the faceflow.v1 wire contract (see protos/). Do not edit."""
