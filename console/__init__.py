"""Warmline: a real-time warm-transfer console for call centers on Twilio Voice."""
