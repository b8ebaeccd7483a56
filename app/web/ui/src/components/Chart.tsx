// One metric over time with uPlot: the mean as a line inside a min/max band, p95 dashed, and
// vertical markers (deploys, puppet runs: ARCHIVE events) on the same time axis.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef } from "preact/hooks";

export interface Marker {
  time: number; // ms
  label: string;
}

export interface ChartProps {
  title: string;
  /** seconds since the epoch, ascending */
  times: number[];
  mean: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
  p95: (number | null)[];
  markers: Marker[];
  range: [number, number]; // seconds
  height?: number;
}

function markersPlugin(markers: Marker[]): uPlot.Plugin {
  return {
    hooks: {
      draw: [
        (u: uPlot) => {
          const ctx = u.ctx;
          const { top, height } = u.bbox;
          ctx.save();
          ctx.strokeStyle = "#6b4fbb";
          ctx.fillStyle = "#6b4fbb";
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          for (const m of markers) {
            const x = Math.round(u.valToPos(m.time / 1000, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.fillText(m.label, x + 4 * devicePixelRatio, top + 12 * devicePixelRatio);
          }
          ctx.restore();
        },
      ],
    },
  };
}

export function Chart(props: ChartProps) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const width = Math.max(300, el.clientWidth);
    const opts: uPlot.Options = {
      title: props.title,
      width,
      height: props.height || 220,
      scales: { x: { time: true, range: () => props.range } },
      series: [
        {},
        { label: "max", stroke: "rgba(46,110,200,0.25)", width: 1 },
        { label: "mean", stroke: "#2e6ec8", width: 2 },
        { label: "min", stroke: "rgba(46,110,200,0.25)", width: 1 },
        { label: "p95", stroke: "#d9822b", width: 1.5, dash: [6, 4] },
      ],
      bands: [{ series: [1, 3], fill: "rgba(46,110,200,0.12)" }],
      legend: { live: true },
      plugins: [markersPlugin(props.markers)],
    };
    const data: uPlot.AlignedData = [props.times, props.max, props.mean, props.min, props.p95];
    const plot = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(300, el.clientWidth), height: props.height || 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.times, props.mean, props.markers, props.range[0], props.range[1]]);
  return <div class="chart" ref={ref} data-testid={`chart-${props.title}`} data-points={props.times.length} data-markers={props.markers.length} />;
}
