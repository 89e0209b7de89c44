"""A Neural ODE written with plain torchdiffeq, as a user writes one (no odebench ODEBlock): the
same weights integrated as trained (`tight`) or with a loose tolerance and adjoint gradients."""
import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint


class Field(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, t, y):
        return self.conv2(torch.tanh(self.conv1(y)))


class ODENet(nn.Module):
    def __init__(self, adjoint=False, tol=1e-3, c=16):
        super().__init__()
        self.adjoint, self.tol = adjoint, tol
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.field = Field(c)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        h = torch.relu(self.stem((x - 0.3) / 0.38))
        solve = odeint_adjoint if self.adjoint else odeint
        h = solve(self.field, h, torch.tensor([0.0, 1.0]), rtol=self.tol, atol=self.tol)[-1]
        return self.head(h.mean((2, 3)))


def tight():
    return ODENet()


def loose_adjoint():
    return ODENet(adjoint=True, tol=0.5)
