// A virtualised list on @tanstack/virtual-core: only the rows in view (plus a few) are in the DOM,
// so a board of 50,000 identities scrolls like one of 50. Rows have a fixed height.
import {
  Virtualizer,
  elementScroll,
  observeElementOffset,
  observeElementRect,
  type VirtualItem,
} from "@tanstack/virtual-core";
import type { ComponentChildren } from "preact";
import { useLayoutEffect, useReducer, useRef, useState } from "preact/hooks";

export interface VirtualListProps {
  count: number;
  rowHeight: number;
  /** Renders row `index` (rows not loaded yet render a placeholder). */
  row: (index: number) => ComponentChildren;
  /** Told which rows are in view whenever that changes. */
  onRange?: (start: number, end: number) => void;
  height?: string;
  className?: string;
  /** Changes of this reset the scroll position (a new filter). */
  resetKey?: string;
}

export function VirtualList(props: VirtualListProps) {
  const scrollRef = useRef<HTMLDivElement>(null);
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  const onRange = useRef(props.onRange);
  onRange.current = props.onRange;
  const [instance] = useState(
    () =>
      new Virtualizer<HTMLDivElement, HTMLDivElement>({
        count: props.count,
        getScrollElement: () => scrollRef.current,
        estimateSize: () => props.rowHeight,
        scrollToFn: elementScroll,
        observeElementRect,
        observeElementOffset,
        overscan: 10,
        onChange: () => rerender(0),
      }),
  );
  instance.setOptions({
    ...instance.options,
    count: props.count,
    estimateSize: () => props.rowHeight,
    onChange: () => rerender(0),
  });
  useLayoutEffect(() => instance._didMount(), []);
  useLayoutEffect(() => {
    instance._willUpdate();
  });
  useLayoutEffect(() => {
    instance.scrollToOffset(0);
  }, [props.resetKey]);
  const items: VirtualItem[] = instance.getVirtualItems();
  const first = items.length ? items[0].index : 0;
  const last = items.length ? items[items.length - 1].index : -1;
  useLayoutEffect(() => {
    onRange.current?.(first, last);
  }, [first, last, props.count]);
  return (
    <div ref={scrollRef} class={`vlist ${props.className || ""}`} style={{ height: props.height || "100%" }}>
      <div style={{ height: `${instance.getTotalSize()}px`, position: "relative", width: "100%" }}>
        {items.map((item) => (
          <div
            key={item.key as any}
            class="vrow"
            data-index={item.index}
            style={{ position: "absolute", top: 0, left: 0, width: "100%", height: `${item.size}px`, transform: `translateY(${item.start}px)` }}
          >
            {props.row(item.index)}
          </div>
        ))}
      </div>
    </div>
  );
}
