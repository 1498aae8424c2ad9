"""`fusegrad.nn`: layers, containers, losses and initialisation with PyTorch's names, built on the Tensor API."""
from . import functional, init, parallel, utils
from .attention import MultiheadAttention
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .embedding import Embedding
from .layers import (
                     ELU,
                     GELU,
                     Dropout,
                     Flatten,
                     Identity,
                     LeakyReLU,
                     Linear,
                     LogSoftmax,
                     ReLU,
                     Sigmoid,
                     SiLU,
                     Softmax,
                     Softplus,
                     Tanh,
)
from .loss import (
                     BCELoss,
                     BCEWithLogitsLoss,
                     CrossEntropyLoss,
                     HuberLoss,
                     KLDivLoss,
                     L1Loss,
                     MSELoss,
                     NLLLoss,
                     SmoothL1Loss,
)
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm
from .pooling import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "ELU", "Flatten", "GELU", "HuberLoss",
           "Identity", "KLDivLoss", "L1Loss", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "Module", "ModuleDict",
           "ModuleList", "NLLLoss", "Parameter", "ReLU", "SiLU", "Sequential", "Sigmoid", "SmoothL1Loss", "Softmax",
           "Softplus", "Tanh", "functional", "init", "parallel", "utils"]
__all__ += ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"]
__all__ += ["MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer"]
__all__ += ["BatchNorm1d", "BatchNorm2d", "Embedding", "GroupNorm", "LayerNorm", "RMSNorm"]
__all__ += ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d", "ConvTranspose1d",
            "ConvTranspose2d", "MaxPool1d", "MaxPool2d"]
