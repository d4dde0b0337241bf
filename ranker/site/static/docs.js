// The API browser at /docs: Swagger UI over ranker's own OpenAPI document, from the assets the
// swagger-ui-py package ships (nothing is fetched from elsewhere).
"use strict";

window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
});
