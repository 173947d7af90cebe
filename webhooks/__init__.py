"""The Twilio-facing edge: signature checks, Twilio's parameters, TwiML, route handlers.
It owns no state and reaches the product through console.intake (and the base modules:
config, extension, urls, ids) only."""
