"""Warmline's product: configuration, the domain and its state on Redis, the real-time hub,
the Twilio side and the HTTP surface, as layers (web > telephony | realtime > domain)."""
