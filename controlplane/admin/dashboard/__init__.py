"""The web dashboard: routes (the pages and their JSON), page and sections (HTML), data (what they show), charts
(SVG), script (the self-refresh)."""
