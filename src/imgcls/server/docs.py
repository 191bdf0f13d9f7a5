"""An API docs page rendered on the server from the OpenAPI schema: no CDN, no script.

FastAPI's default ``/docs`` loads Swagger UI from a CDN, which fails offline (and would break
our Content-Security-Policy). This page is plain HTML + one stylesheet served by this process;
``/openapi.json`` stays available for tools (schemathesis, client generators).
"""

from __future__ import annotations

import json
from html import escape

__all__ = ["render_docs", "DOCS_CSS"]

DOCS_CSS = """
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6475; --bg: #fbfbfd; --card: #fff;
  --line: #dfe3ea; --accent: #2453c7; --get: #1d7a46; --post: #a3590b; }
@media (prefers-color-scheme: dark) { :root { --fg: #e7eaf0; --muted: #a3abba; --bg: #12151b;
  --card: #1a1e26; --line: #2c3340; --accent: #8fb0ff; --get: #5fcf8f; --post: #f0a75a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 0; }
h3 { font-size: .95rem; margin: 1rem 0 .35rem; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
a { color: var(--accent); }
.lead { color: var(--muted); margin: 0 0 1.5rem; }
nav ul { list-style: none; padding: 0; margin: 0 0 2rem; columns: 2; }
nav li { margin: .2rem 0; }
section.op { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 1rem 1.25rem; margin: 0 0 1.25rem; }
.method { display: inline-block; min-width: 3.8rem; font: 700 .8rem ui-monospace, monospace;
  padding: .15rem .45rem; border-radius: 4px; border: 1px solid currentColor; margin-right: .5rem;
  text-align: center; }
.m-get { color: var(--get); } .m-post { color: var(--post); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85rem; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem;
  overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
.muted { color: var(--muted); }
"""


def _inline_code(text: str) -> str:
    """Escape ``text`` and render Markdown `backticks` as <code> (descriptions are Markdown)."""
    pieces = text.split("`")
    return "".join(f"<code>{escape(piece)}</code>" if i % 2 else escape(piece) for i, piece in enumerate(pieces))


def _schema_text(schema: dict, components: dict, depth: int = 0) -> str:
    """A compact one-line description of a JSON schema (enough to read, not a validator)."""
    if depth > 4:
        return "…"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _schema_text(components.get(name, {}), components, depth + 1) if depth < 3 else name
    for combiner in ("anyOf", "oneOf", "allOf"):
        if combiner in schema:
            options = [_schema_text(s, components, depth + 1) for s in schema[combiner] if s.get("type") != "null"]
            return " | ".join(options) + (" (optional)" if len(options) < len(schema[combiner]) else "")
    kind = schema.get("type")
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if kind == "array":
        return f"[{_schema_text(schema.get('items', {}), components, depth + 1)}, …]"
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if not props:
            return "object"
        inner = ", ".join(f"{k}: {_schema_text(v, components, depth + 1)}" for k, v in props.items())
        return "{" + inner + "}"
    text = kind or "any"
    if schema.get("format"):
        text += f" ({schema['format']})"
    bounds = [f"{k}={schema[k]}" for k in ("minimum", "maximum", "maxLength") if k in schema]
    return text + (f" [{', '.join(bounds)}]" if bounds else "")


def _operation(path: str, method: str, op: dict, components: dict, base: str, api_key_required: bool) -> str:
    anchor = f"{method}-{path.strip('/').replace('/', '-') or 'root'}"
    parts = [f'<section class="op" id="{escape(anchor)}">',
             f'<h2><span class="method m-{method}">{method.upper()}</span><code>{escape(path)}</code></h2>']
    if op.get("summary"):
        parts.append(f"<p><strong>{escape(op['summary'])}</strong></p>")
    if op.get("description"):
        parts.append(f"<p>{_inline_code(' '.join(op['description'].split()))}</p>")
    params = op.get("parameters", [])
    if params:
        parts.append("<h3>Query parameters</h3><table><tr><th>name</th><th>type</th><th>description</th></tr>")
        for p in params:
            schema = p.get("schema", {})
            default = f" (default {json.dumps(schema['default'])})" if "default" in schema else ""
            parts.append(f"<tr><td><code>{escape(p['name'])}</code></td>"
                         f"<td>{escape(_schema_text(schema, components))}{escape(default)}</td>"
                         f"<td>{_inline_code(p.get('description', ''))}</td></tr>")
        parts.append("</table>")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        parts.append(f"<h3>Request body</h3><p><code>{escape(media)}</code>: "
                     f"{escape(_schema_text(content.get('schema', {}), components))}</p>")
    responses = op.get("responses", {})
    if responses:
        parts.append("<h3>Responses</h3><table><tr><th>status</th><th>body</th></tr>")
        for status, response in sorted(responses.items()):
            content = response.get("content", {}).get("application/json", {})
            text = _schema_text(content.get("schema", {}), components) if content else response.get("description", "")
            parts.append(f"<tr><td><code>{escape(status)}</code></td><td>{escape(text)}</td></tr>")
        parts.append("</table>")
    key = " -H 'X-API-Key: KEY'" if api_key_required and (path.startswith("/api/") or path == "/metrics") else ""
    if method == "post" and path.endswith("/classify"):
        example = f"curl{key} -F 'file=@photo.jpg' -F 'file=@other.png' '{base}{path}?top_k=3&lang=en'"
    elif method == "get":
        example = f"curl{key} '{base}{path}'"
    else:
        example = ""
    if example:
        parts.append(f"<h3>Example</h3><pre>{escape(example)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def render_docs(openapi: dict, base: str, api_key_required: bool) -> str:
    """The whole docs page. ``base`` is this server's own address as the browser reached it."""
    info = openapi.get("info", {})
    components = openapi.get("components", {}).get("schemas", {})
    ops = [(path, method, op) for path, item in openapi.get("paths", {}).items()
           for method, op in item.items() if method in ("get", "post", "put", "delete", "patch")]
    nav = "\n".join(f'<li><a href="#{escape(m)}-{escape(p.strip("/").replace("/", "-") or "root")}">'
                    f'{m.upper()} {escape(p)}</a></li>' for p, m, _ in ops)
    auth = ("<p>This server requires an API key on <code>/api/*</code> and <code>/metrics</code>: send "
            "<code>X-API-Key: KEY</code> or <code>Authorization: Bearer KEY</code>.</p>" if api_key_required else "")
    body = "\n".join(_operation(p, m, op, components, base, api_key_required) for p, m, op in ops)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(info.get('title', 'API'))} — API docs</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/docs.css">
</head>
<body>
<main>
<h1>{escape(info.get('title', 'API'))} API <span class="muted">v{escape(str(info.get('version', '')))}</span></h1>
<p class="lead">{escape(info.get('description', ''))} The machine-readable schema is at
<a href="/openapi.json">/openapi.json</a>; the web app is at <a href="/">/</a>.</p>
{auth}
<p>Errors are always JSON: <code>{{"error": {{"code": "…", "message": "…"}}}}</code>. Busy or not-ready
answers (503) carry <code>Retry-After</code>.</p>
<nav aria-label="Endpoints"><ul>
{nav}
</ul></nav>
{body}
</main>
</body>
</html>
"""
