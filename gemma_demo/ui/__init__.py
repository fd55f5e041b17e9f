"""The Gradio app: `layout` places components and wires events, `handlers` map task results to
outputs, `endpoints` wraps handlers into named API endpoints (settings, model, errors, Stop),
`settings` is the shared settings panel, `wiring` what every tab is built with (the
endpoints, the settings, the model queue), `server` launches, `login_page` and `components`
adjust Gradio. Imports `tasks`, `engine`, `media` and `config`; never `cli`.
"""
