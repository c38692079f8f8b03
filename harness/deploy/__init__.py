"""Deployment on OpenVINO's bit-packed CPU kernels: ``openvino_ir`` (export, the binary
rewrite, the runtime check) and ``engines`` (latency, throughput and memory of each engine,
side by side). The `harness deploy` stage (``harness/stages/deploy.py``) calls them."""
