"""A local stand-in for Sakura's Secret Manager API, faithful enough to test against."""

from emulator.app import Emulator, EmulatorConfig
from emulator.knobs import Fault, Knobs
from emulator.server import run_in_thread
from emulator.store import Store

__all__ = ["Emulator", "EmulatorConfig", "Fault", "Knobs", "Store", "run_in_thread"]
