"""torch.library custom ops: schema, fake implementation, autograd. One file per operator.

Importing this package registers the ops under torch.ops.fastalex.
"""
from fastalex.ops.local_response_norm import local_response_norm, local_response_norm_backward

__all__ = ["local_response_norm", "local_response_norm_backward"]
