"""The data plane: an aiohttp proxy serving the OpenAI API, enforcing the snapshot it was last given."""
