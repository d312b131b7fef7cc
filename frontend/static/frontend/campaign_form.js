// The campaign form (campaign_form.html): RunForm.mount renders the specs of the API's create serializer and posts
// them to POST /api/v1/campaigns/; "Preview pairs" posts the same fields to POST /api/v1/campaigns/preview/ and
// shows a few pairs from images that exist now, or says the campaign will generate them when opened.
"use strict";

const CampaignForm = (() => {
  const el = RunForm.el;

  function showPreview(preview) {
    const section = document.getElementById("preview");
    const summary = document.getElementById("preview-summary");
    const list = document.getElementById("preview-pairs-list");
    section.hidden = false;
    const parts = [`${preview.images_wanted} images (${preview.images_per_prompt} per version and prompt).`];
    if (preview.prompts_blocked) {
      parts.push(`${preview.prompts_blocked} prompt${preview.prompts_blocked === 1 ? " is" : "s are"} left out by the blocklist.`);
    }
    if (preview.images_missing) {
      parts.push(`${preview.images_missing} of them do not exist yet: when the campaign is opened it starts a generate run ` +
        "for them and waits in the preparing state, then opens by itself.");
    } else {
      parts.push("All of them exist: the campaign opens at once.");
    }
    parts.push(preview.examples.length
      ? `${preview.pairs_now} pairs can be made from the images that exist now; ${preview.examples.length} of them:`
      : "No pair can be shown before those images are made.");
    summary.textContent = parts.join(" ");
    list.replaceChildren(...preview.examples.map((pair) => el(
      "figure", {className: "preview-pair"},
      el("img", {src: pair.image_a.url, alt: `version ${pair.image_a.model_version}, seed ${pair.image_a.seed}`, width: 128, height: 128}),
      el("img", {src: pair.image_b.url, alt: `version ${pair.image_b.model_version}, seed ${pair.image_b.seed}`, width: 128, height: 128}),
      el("figcaption", {className: "muted small", text: pair.prompt}),
    )));
  }

  function start(options) {
    const form = RunForm.mount({
      csrfToken: options.csrfToken,
      ids: {form: "campaign-form", fields: "campaign-fields", errors: "campaign-errors", submit: "create-campaign"},
      post: {
        url: options.campaignsUrl,
        body: (config) => config,
        errors: (body) => body,
        location: (body) => options.campaignPage.replace("/0/", `/${body.id}/`),
      },
    }, options.specs);
    const button = document.getElementById("preview-pairs");
    button.addEventListener("click", async () => {
      form.clearErrors();
      const {config, problems} = form.config();
      if (Object.keys(problems).length) { form.showErrors(problems); return; }
      button.disabled = true;
      try {
        const {response, body} = await form.send(options.previewUrl, config);
        if (response.ok) showPreview(body);
        else { document.getElementById("preview").hidden = true; form.showResponseErrors(body); }
      } catch (error) {
        form.general.textContent = `Could not reach the server: ${error}`;
      } finally {
        button.disabled = false;
      }
    });
    window.campaignForm = form;
  }

  return {start};
})();
