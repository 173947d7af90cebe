"""A local stand-in for Twilio Voice that talks to the app only over HTTP (see
simulator/README.md). The public interface is what this package exports; test
tooling on top of it (a held mode, request recording, fault injection, a
step-by-step webhook driver, a made-up account) is in ``simulator.testing``."""

from simulator.callbacks import Chaos
from simulator.load import LoadPlan
from simulator.parties import AutoAnswer, Person, Phone
from simulator.server import Simulator
from simulator.wire import sign

__all__ = ["AutoAnswer", "Chaos", "LoadPlan", "Person", "Phone", "Simulator", "sign"]
