"""Backends: one module per device, all behind the `Device` interface."""
from .cpu import CpuDevice
from .cuda import cuda_available
from .device import (
    Buffer,
    Device,
    available_devices,
    default_device,
    get_device,
    register_device,
    set_default_device,
    synchronize,
)
from .numpy_device import NumpyDevice
from .opencl import opencl_available

register_device("numpy", NumpyDevice)
register_device("cpu", CpuDevice)
if opencl_available():  # pyopencl imports and some platform has a device
    from .opencl import OpenCLDevice
    register_device("opencl", OpenCLDevice)
if cuda_available():  # cuda-bindings imports and the driver reports a GPU
    from .cuda import CudaDevice
    register_device("cuda", CudaDevice)

__all__ = ["Buffer", "CpuDevice", "Device", "NumpyDevice", "available_devices", "default_device", "get_device",
           "register_device", "set_default_device", "synchronize"]
