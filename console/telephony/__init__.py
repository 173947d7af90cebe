"""The Twilio side: the REST gateway, the runner that carries out committed effects, and
reconcile against Twilio. Imports console.domain and below, never the web or real-time side."""
