"""Backends: one module per device, all behind the `Device` interface."""
from .cpu import CpuDevice
from .device import Buffer, Device, available_devices, default_device, get_device, register_device, set_default_device
from .numpy_device import NumpyDevice

register_device("numpy", NumpyDevice)
register_device("cpu", CpuDevice)

__all__ = ["Buffer", "CpuDevice", "Device", "NumpyDevice", "available_devices", "default_device", "get_device",
           "register_device", "set_default_device"]
