// The web map of `satgen serve --tiles`: the server's TileJSON drives a Leaflet map of its
// synthetic imagery (zooms, bounds, attribution), with an opacity slider and the data area's
// outline. Without a tile source the server answers 404 and the page says why.
"use strict";

async function loadTileJson() {
  const response = await fetch("tiles/tilejson.json");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `the server answered HTTP ${response.status}`);
  }
  return body;
}

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

function showMap(tilejson) {
  const [west, south, east, north] = tilejson.bounds;
  const bounds = L.latLngBounds([south, west], [north, east]);
  const zooms = { minZoom: tilejson.minzoom, maxZoom: tilejson.maxzoom };
  const map = L.map("map", { ...zooms, maxBounds: bounds.pad(1) });
  const imagery = L.tileLayer(tilejson.tiles[0], {
    ...zooms, bounds, attribution: escapeHtml(tilejson.attribution),
  }).addTo(map);
  const outline = L.rectangle(bounds, { color: "#ff7800", weight: 2, fill: false, interactive: false }).addTo(map);
  map.fitBounds(bounds);

  document.getElementById("opacity").addEventListener("input", (event) => {
    imagery.setOpacity(event.target.value / 100);
  });
  document.getElementById("outline").addEventListener("change", (event) => {
    if (event.target.checked) {
      outline.addTo(map);
    } else {
      outline.remove();
    }
  });
  document.getElementById("controls").hidden = false;
  window.satgenMap = map;
}

loadTileJson().then(showMap).catch((error) => {
  const message = document.getElementById("message");
  message.textContent = `No map to show: ${error.message}`;
  message.hidden = false;
});
