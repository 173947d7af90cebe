"""The HTTP surface people use: the JSON API, login, the pages, /ws, health, metrics and
reports. Imports every layer of console/ below it, never webhooks/ or warmline/."""
