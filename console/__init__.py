"""Warmline's product: configuration, the domain and its state on Redis, the real-time hub,
the Twilio side, the history and the HTTP surface, as layers (web | intake > telephony |
realtime | history > domain > redis_ext | postgres_ext > extension | urls | ids |
network_errors > tasks > config); it never imports webhooks/ or warmline/."""
