// The run form: built from a run kind's field specs (GET /api/v1/run-kinds/ -> form, presets; core/form_schema.py),
// posted as {kind, config} to POST /api/v1/runs/. Only fields the user set (typed, a preset, a run to repeat) and
// required ones are sent, so the server's defaults stay the server's; a 400's messages are shown beside their fields.
// RunForm.mount(options, specs) builds the same form from any serializer's specs and posts it where options say
// (the campaign form: campaign_form.html).
"use strict";

const RunForm = (() => {
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  const format = (value) => (typeof value === "string" ? value : JSON.stringify(value));

  function hint(spec) {
    const parts = [];
    if (spec.help_text) parts.push(spec.help_text);
    if (spec.min !== undefined || spec.max !== undefined) {
      const left = spec.min === undefined ? "(−∞" : `${spec.min_exclusive ? "(" : "["}${spec.min}`;
      const right = spec.max === undefined ? "∞)" : `${spec.max}${spec.max_exclusive ? ")" : "]"}`;
      parts.push(`range ${left}, ${right}`);
    }
    if (spec.min_length !== undefined || spec.max_length !== undefined) {
      if (spec.type === "list") parts.push(`${spec.min_length ?? 0} to ${spec.max_length ?? "any number of"} items`);
      else if (spec.max_length !== undefined) parts.push(`at most ${spec.max_length} characters`);
    }
    if ("default" in spec) parts.push(`default ${spec.default === null ? "null" : format(spec.default)}`);
    if (spec.nullable) parts.push("empty: null");
    return parts.join(" · ");
  }

  // A control reads {empty, value} and writes a value; "touched" once the user (or a preset, or a run) set it.
  function makeControl(spec, id) {
    const kind = spec.type;
    if (kind === "boolean") {
      const input = el("input", {type: "checkbox", id});
      input.checked = spec.default === true;
      return {input, read: () => ({empty: false, value: input.checked}), write: (v) => { input.checked = Boolean(v); }};
    }
    if (kind === "choice" || (kind === "id" && Array.isArray(spec.choices))) {
      const select = el("select", {id});
      const choices = [...(spec.choices || [])];
      if (!("default" in spec) || spec.nullable || !spec.required) {
        const empty = kind === "id" ? "choose…" : "default" in spec ? "(server default)" : "(not set)";
        select.append(el("option", {value: "", text: empty}));
      }
      choices.forEach((choice) => select.append(el("option", {value: String(choice.value), text: choice.label})));
      const find = (v) => choices.find((c) => String(c.value) === String(v));
      const write = (v) => {
        if (v !== null && v !== undefined && !find(v)) {  // a value the list does not offer (a run's, a preset's): keep it
          choices.push({value: v, label: `${v} (not offered)`});
          select.append(el("option", {value: String(v), text: `${v} (not offered)`}));
        }
        select.value = v === null || v === undefined ? "" : String(v);
      };
      if ("default" in spec) write(spec.default);
      return {
        input: select,
        read: () => (select.value === "" ? {empty: true} : {empty: false, value: find(select.value).value}),
        write,
      };
    }
    if (kind === "integer" || kind === "number" || kind === "id") {
      const input = el("input", {
        type: "number", id, step: kind === "number" ? "any" : "1",
        min: spec.min ?? (kind === "id" ? 1 : null), max: spec.max ?? null,
      });
      if ("default" in spec && spec.default !== null) input.value = spec.default;
      return {
        input,
        read: () => (input.value.trim() === "" ? {empty: true} : {empty: false, value: Number(input.value)}),
        write: (v) => { input.value = v === null || v === undefined ? "" : v; },
      };
    }
    if (kind === "list") return listControl(spec, id);
    if (kind === "object" && Array.isArray(spec.children)) return objectControl(spec, id);
    if (kind === "object") {
      const area = el("textarea", {id, rows: 3, placeholder: "a JSON object"});
      if ("default" in spec) area.value = JSON.stringify(spec.default);
      return {
        input: area,
        read: () => {
          if (area.value.trim() === "") return {empty: true};
          try { return {empty: false, value: JSON.parse(area.value)}; }
          catch (error) { return {empty: false, invalid: "Not valid JSON."}; }
        },
        write: (v) => { area.value = v === null || v === undefined ? "" : JSON.stringify(v); },
      };
    }
    const input = el("input", {type: "text", id, maxlength: spec.max_length ?? null});
    if ("default" in spec && spec.default !== null) input.value = spec.default;
    return {
      input,
      read: () => (input.value === "" ? {empty: true} : {empty: false, value: input.value}),
      write: (v) => { input.value = v === null || v === undefined ? "" : v; },
    };
  }

  function listControl(spec, id) {
    const item = spec.item || {type: "string"};
    if ((item.type === "id" || item.type === "choice") && Array.isArray(item.choices)) {
      const select = el("select", {id, multiple: true, size: Math.min(8, Math.max(3, item.choices.length))});
      item.choices.forEach((choice) => select.append(el("option", {value: String(choice.value), text: choice.label})));
      const byValue = new Map(item.choices.map((choice) => [String(choice.value), choice.value]));
      const write = (values) => {
        const wanted = new Set((values || []).map(String));
        for (const option of select.options) option.selected = wanted.has(option.value);
      };
      if ("default" in spec) write(spec.default);
      return {
        input: select,
        read: () => {
          const values = Array.from(select.selectedOptions, (o) => byValue.get(o.value));
          return values.length ? {empty: false, value: values} : {empty: true};
        },
        write,
      };
    }
    if (item.type === "object" && Array.isArray(item.children)) return rowsControl(spec, item, id);
    const input = el("input", {type: "text", id, placeholder: "comma-separated"});
    const numeric = ["integer", "number", "id"].includes(item.type);
    const write = (values) => { input.value = Array.isArray(values) ? values.join(", ") : ""; };
    if ("default" in spec) write(spec.default);
    return {
      input,
      read: () => {
        const parts = input.value.split(",").map((p) => p.trim()).filter((p) => p !== "");
        if (!parts.length) return {empty: true};
        return {empty: false, value: numeric ? parts.map(Number) : parts};
      },
      write,
    };
  }

  function objectControl(spec, id) {
    const box = el("fieldset", {id, className: "nested"});
    const children = spec.children.map((child) => {
      const control = makeControl(child, `${id}-${child.name}`);
      box.append(el("label", {for: `${id}-${child.name}`, text: child.label + (child.required ? " *" : "")}), control.input);
      return [child, control];
    });
    return {
      input: box,
      read: () => {
        const value = {};
        for (const [child, control] of children) {
          const r = control.read();
          if (!r.empty) value[child.name] = r.value;
        }
        return Object.keys(value).length ? {empty: false, value} : {empty: true};
      },
      write: (v) => { for (const [child, control] of children) if (v && child.name in v) control.write(v[child.name]); },
    };
  }

  function rowsControl(spec, item, id) {
    const box = el("div", {id, className: "rows"});
    const list = el("div");
    const rows = [];
    const addRow = (value) => {
      const row = objectControl(item, `${id}-${rows.length}`);
      const remove = el("button", {type: "button", className: "small", text: "Remove"});
      const wrapper = el("div", {className: "row"}, row.input, remove);
      const entry = {row, wrapper};
      remove.addEventListener("click", () => {
        rows.splice(rows.indexOf(entry), 1); wrapper.remove();
        box.dispatchEvent(new Event("change", {bubbles: true}));
      });
      rows.push(entry); list.append(wrapper);
      if (value) row.write(value);
    };
    const add = el("button", {type: "button", className: "small", text: `Add ${spec.label.toLowerCase()} entry`});
    add.addEventListener("click", () => { addRow(null); box.dispatchEvent(new Event("change", {bubbles: true})); });
    box.append(list, add);
    const write = (values) => { rows.splice(0).forEach((r) => r.wrapper.remove()); (values || []).forEach(addRow); };
    return {
      input: box,
      read: () => {
        const values = rows.map((r) => r.row.read()).filter((r) => !r.empty).map((r) => r.value);
        return values.length ? {empty: false, value: values} : {empty: true};
      },
      write,
    };
  }

  function messages(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      if (detail.every((d) => typeof d === "string")) return detail.join(" ");
      return detail.map((d, i) => (d && Object.keys(d).length ? `item ${i + 1}: ${messages(d)}` : "")).filter(Boolean).join(" ");
    }
    if (detail && typeof detail === "object") {
      return Object.entries(detail).map(([key, value]) => `${/^\d+$/.test(key) ? `item ${Number(key) + 1}` : key}: ${messages(value)}`).join(" ");
    }
    return String(detail);
  }

  // options.ids: the page's elements ({form, fields, errors, submit}; default the run form's). options.post: where
  // and what to post ({url, body(config), errors(responseBody), location(responseBody)}; default a run's).
  const RUN_IDS = {form: "run-form", fields: "form-fields", errors: "form-errors", submit: "start-run"};

  class Form {
    constructor(options, kindInfo) {
      this.options = options;
      this.kind = kindInfo;
      this.ids = {...RUN_IDS, ...(options.ids || {})};
      this.post = options.post || {
        url: options.runsUrl,
        body: (config) => ({kind: kindInfo.name, config}),
        errors: (body) => {
          if (body.config && typeof body.config === "object" && !Array.isArray(body.config)) {
            const {config: configErrors, ...rest} = body;
            return {...configErrors, ...rest};
          }
          return body;
        },
        location: (body) => options.runPage.replace("/0/", `/${body.id}/`),
      };
      this.form = document.getElementById(this.ids.form);
      this.fieldsBox = document.getElementById(this.ids.fields);
      this.general = document.getElementById(this.ids.errors);
      this.build();
      this.form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    }

    build() {
      this.fields = new Map();
      const main = el("div", {className: "fields"});
      const groups = new Map();
      for (const spec of this.kind.form) {
        const id = `field-${spec.name}`;
        const control = makeControl(spec, id);
        const error = el("p", {className: "error field-error", id: `error-${spec.name}`, "data-error-for": spec.name, role: "alert"});
        const help = hint(spec);
        const box = el(
          "div", {className: `field field-${spec.type}`, "data-field": spec.name},
          el("label", {for: id, text: spec.label + (spec.required ? " *" : "")}),
          control.input,
          help ? el("p", {className: "muted small help", id: `help-${spec.name}`, text: help}) : null,
          error,
        );
        if (help) control.input.setAttribute("aria-describedby", `help-${spec.name} error-${spec.name}`);
        const field = {spec, control, box, error, touched: false};
        const touch = () => { field.touched = true; box.classList.add("touched"); };
        box.addEventListener("input", touch);
        box.addEventListener("change", touch);
        field.touch = touch;
        this.fields.set(spec.name, field);
        if (spec.group) {
          if (!groups.has(spec.group)) {
            const details = el("details", {className: "group", "data-group": spec.group});
            details.append(el("summary", {text: spec.group}), el("div", {className: "fields"}));
            groups.set(spec.group, details);
          }
          groups.get(spec.group).querySelector(".fields").append(box);
        } else main.append(box);
      }
      for (const details of groups.values()) {
        const count = details.querySelectorAll(".field").length;
        details.querySelector("summary").textContent += ` (${count})`;
      }
      this.fieldsBox.replaceChildren(main, ...groups.values());
    }

    fill(config, {skip = []} = {}) {
      const unknown = [];
      for (const [name, value] of Object.entries(config)) {
        if (skip.includes(name)) continue;
        const field = this.fields.get(name);
        if (!field) { unknown.push(name); continue; }
        field.control.write(value);
        field.touch();
      }
      return unknown;
    }

    reset() { this.build(); this.clearErrors(); }

    clearErrors() {
      this.general.textContent = "";
      for (const field of this.fields.values()) {
        field.error.textContent = "";
        field.box.classList.remove("invalid");
        field.control.input.removeAttribute("aria-invalid");
      }
    }

    config() {
      const config = {};
      const problems = {};
      for (const [name, field] of this.fields) {
        const r = field.control.read();
        if (r.invalid) { problems[name] = [r.invalid]; continue; }
        if (r.empty) {
          if (field.touched && field.spec.nullable) config[name] = null;
        } else if (field.touched || field.spec.required) {
          config[name] = r.value;
        }
      }
      return {config, problems};
    }

    showErrors(errors) {
      const general = [];
      let first = null;
      for (const [name, detail] of Object.entries(errors)) {
        const field = this.fields.get(name);
        if (!field) { general.push(name === "non_field_errors" ? messages(detail) : `${name}: ${messages(detail)}`); continue; }
        field.error.textContent = messages(detail);
        field.box.classList.add("invalid");
        field.control.input.setAttribute("aria-invalid", "true");
        const details = field.box.closest("details");
        if (details) details.open = true;
        first = first || field;
      }
      this.general.textContent = general.join("\n");
      if (first) first.box.scrollIntoView({block: "center"});
    }

    // POST json to url with the session's CSRF token: {response, body} (body: the JSON answer, or a detail).
    async send(url, json) {
      const response = await fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": this.options.csrfToken},
        body: JSON.stringify(json),
      });
      const body = await response.json().catch(() => ({detail: `${response.status} ${response.statusText}`}));
      return {response, body};
    }

    showResponseErrors(body) {
      const errors = this.post.errors(body);
      this.showErrors(errors.detail ? {non_field_errors: errors.detail} : errors);
    }

    async submit() {
      this.clearErrors();
      const {config, problems} = this.config();
      if (Object.keys(problems).length) { this.showErrors(problems); return; }
      const button = document.getElementById(this.ids.submit);
      button.disabled = true;
      try {
        const {response, body} = await this.send(this.post.url, this.post.body(config));
        if (response.ok) { window.location = this.post.location(body); return; }
        this.showResponseErrors(body);
      } catch (error) {
        this.general.textContent = `Could not reach the server: ${error}`;
      } finally {
        button.disabled = false;
      }
    }
  }

  async function start(options) {
    const loading = document.getElementById("form-loading");
    const response = await fetch(options.kindsUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}});
    if (!response.ok) { loading.textContent = `Could not load the run kinds (${response.status}).`; return; }
    const kindInfo = (await response.json()).find((k) => k.name === options.kind);
    if (!kindInfo || !kindInfo.can_start) { loading.textContent = `You may not start ${options.kind} runs.`; return; }
    const form = new Form(options, kindInfo);
    loading.remove();

    const presets = document.getElementById("presets");
    for (const preset of kindInfo.presets) {
      const button = el("button", {type: "button", "data-preset": preset.name, title: preset.description, text: preset.name});
      button.addEventListener("click", () => { form.reset(); form.fill(preset.config); });
      presets.append(button);
    }
    presets.hidden = !kindInfo.presets.length;

    if (options.fromRunUrl) {
      const run = await fetch(options.fromRunUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (run.ok) {
        const unknown = form.fill((await run.json()).config || {}, {skip: ["name"]});
        if (unknown.length) form.general.textContent = `Not in this form any more (left out): ${unknown.join(", ")}.`;
      }
    }
    document.getElementById("run-form").dataset.ready = "true";
    window.runForm = form;
  }

  // A form from `specs` (field specs of any serializer) in the page's elements named by options.ids, posted as
  // options.post says; the form element gets data-ready="true".
  function mount(options, specs) {
    const form = new Form(options, {name: options.name || "", form: specs, presets: []});
    form.form.dataset.ready = "true";
    return form;
  }

  return {start, mount, messages, el};
})();
