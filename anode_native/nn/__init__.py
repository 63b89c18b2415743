"""Neural network modules: NODE / ANODE vector fields, the ODE block and models, the ResNet baseline."""
from .block import ODEBlock, augment
from .conv import Conv2dTime, ConvODEFunc
from .models import ConvODENet, ODENet, count_parameters
from .odefunc import ODEFunc
from .resnet import ResidualBlock, ResNet

__all__ = [
    "ODEFunc", "ConvODEFunc", "Conv2dTime", "ODEBlock", "augment",
    "ODENet", "ConvODENet", "ResNet", "ResidualBlock", "count_parameters",
]
