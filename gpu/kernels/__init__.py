"""hftaccel.kernels: CUDA C kernel sources loaded by CuPy."""
