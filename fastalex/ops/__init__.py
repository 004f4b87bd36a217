"""torch.library custom ops: schema, fake implementation, autograd. One file per operator.

Importing this package registers the ops under torch.ops.fastalex.
"""
from fastalex.ops.conv2d import conv2d, conv2d_grad_input, conv2d_grad_weight
from fastalex.ops.local_response_norm import local_response_norm, local_response_norm_backward
from fastalex.ops.max_pool2d import max_pool2d, max_pool2d_backward
from fastalex.ops.relu_lrn_max_pool2d import relu_lrn_max_pool2d, relu_lrn_max_pool2d_backward

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "local_response_norm", "local_response_norm_backward",
           "max_pool2d", "max_pool2d_backward", "relu_lrn_max_pool2d", "relu_lrn_max_pool2d_backward"]
