"""Triton kernels and their launchers: plain tensors in and out, no autograd, one file per operator."""
