"""The call center's rules and its state on Redis: records, derive, settling, the unit
of work and its transaction, the waiting line, routing, events and the read models.
Imports only console.config, console.urls and console.ids from the rest of the product."""
