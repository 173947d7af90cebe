"""A local stand-in for Twilio Voice (SPEC §7): talks to the app only over HTTP."""
