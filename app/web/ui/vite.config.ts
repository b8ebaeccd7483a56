// Build of Vigil's web UI into app/web/static/ (served by `vigil ui`, shipped in the wheel as package
// data). `make` runs it (npm ci && npm run build).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "../static",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm exec vite` for UI work: the API of a running `vigil ui`
    proxy: { "/api": "http://127.0.0.1:8090" },
  },
});
