"""The gRPC control plane: servicer (API <-> switch mapping) and server (listeners)."""
