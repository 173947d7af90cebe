"""The Twilio-facing edge: signature checks, Twilio's parameters, TwiML, route handlers."""
