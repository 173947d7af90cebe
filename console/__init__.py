"""Warmline's product: configuration, the domain and its state on Redis, the real-time hub,
the Twilio side and the HTTP surface, as layers (web | intake > telephony | realtime >
domain > redis_ext > extension | urls | ids > config); it never imports webhooks/ or warmline/."""
