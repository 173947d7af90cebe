"""The call center's rules and its state on Redis: records, derive, settling, the unit
of work, the waiting line, routing, events and the read models. Imports only console.config
and console.urls from the rest of the product."""
