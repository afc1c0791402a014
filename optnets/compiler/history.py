"""``sum_j b[j] * x[j]`` read from a dense stage's concatenation: the one pass over the history that AGD-Net's step
makes beyond DenseNet's, as a batched product of the coefficient row with each sample's iterates.

Autograd would take the history's gradient through a slice of the concatenation (``cat[:, start:]``, which leaves
out the stage input ``x[0]`` of another width): a zero-filled tensor of the whole concatenation, then a copy into
the slice. :class:`WeightedHistory` writes that gradient straight into a fresh tensor and zeroes only ``x[0]``'s
channels."""
import torch
from torch.fx._symbolic_trace import is_fx_symbolic_tracing


def product(cat: torch.Tensor, row: torch.Tensor, start: int) -> torch.Tensor:
    """The forward's formula: ``row (1 x k)`` times each sample's ``k`` iterates (``cat[:, start:]``, ``k x w*h*w``)."""
    n, k = cat.shape[0], row.numel()
    history = cat[:, start:].reshape(n, k, -1)  # a view: no copy of the history
    width = (cat.shape[1] - start) // k
    return torch.bmm(row.reshape(1, 1, k).expand(n, 1, k), history).view(n, width, cat.shape[2], cat.shape[3])


class WeightedHistory(torch.autograd.Function):
    """:func:`product`, whose backward writes the concatenation's gradient without slicing it."""

    @staticmethod
    def forward(ctx, cat: torch.Tensor, row: torch.Tensor, start: int) -> torch.Tensor:
        ctx.save_for_backward(cat, row)  # cat is what the step's T saves anyway: no extra memory
        ctx.start = start
        return product(cat, row, start)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        cat, row = ctx.saved_tensors
        n, k = cat.shape[0], row.numel()
        grad = grad.reshape(n, 1, -1)
        grad_cat = grad_row = None
        if ctx.needs_input_grad[0]:  # d/dx[j] = row[j] * grad: an outer product, written in place
            grad_cat = torch.empty_like(cat, memory_format=torch.contiguous_format)
            grad_cat[:, :ctx.start].zero_()
            torch.mul(row.reshape(1, k, 1).to(grad.dtype), grad, out=grad_cat[:, ctx.start:].view(n, k, -1))
        if ctx.needs_input_grad[1]:  # d/drow[j] = sum over samples and positions of x[j] * grad
            history = cat[:, ctx.start:].reshape(n, k, -1)
            grad_row = torch.bmm(grad, history.transpose(1, 2)).sum(0).reshape(row.shape).to(row.dtype)
        return grad_cat, grad_row, None


def weighted_history(cat: torch.Tensor, row: torch.Tensor, start: int) -> torch.Tensor:
    """``sum_j row[j] * x[j]``, the iterates ``x[j]`` being ``cat[:, start:]`` cut into ``len(row)`` equal slices.
    TorchScript and FX see the plain :func:`product`."""
    if torch.jit.is_scripting():
        return product(cat, row, start)
    return _traced_or_fused(cat, row, start)


@torch.jit.unused
def _traced_or_fused(cat: torch.Tensor, row: torch.Tensor, start: int) -> torch.Tensor:
    return product(cat, row, start) if is_fx_symbolic_tracing() else WeightedHistory.apply(cat, row, start)
