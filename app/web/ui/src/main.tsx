// Vigil's web UI: the page for the path, a header with the live connection, and the live stream.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { setToken, token } from "./api";
import { connect, onConnection, reconnect, type Connection } from "./live";
import { Actions } from "./pages/Actions";
import { Alerts } from "./pages/Alerts";
import { Backtest } from "./pages/Backtest";
import { Board } from "./pages/Board";
import { Events } from "./pages/Events";
import { Identity } from "./pages/Identity";
import { Members } from "./pages/Members";
import { Silences } from "./pages/Silences";
import { Trace } from "./pages/Trace";
import { linkHandler, navigate, useLocation } from "./router";
import "./styles.css";

const NAV: [string, string][] = [
  ["/", "Board"],
  ["/alerts", "Alerts"],
  ["/actions", "Actions"],
  ["/silences", "Silences"],
  ["/events", "Events"],
  ["/members", "Members"],
  ["/backtest", "Backtest"],
  ["/trace", "Trace"],
];

function Page({ path }: { path: string }) {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0] || "") {
    case "":
      return <Board />;
    case "identity":
      return parts.length >= 3 ? <Identity subject={parts[1]} name={parts.slice(2).join("/")} /> : <p>identity: /identity/SUBJECT/NAME</p>;
    case "alerts":
      return <Alerts />;
    case "actions":
      return <Actions />;
    case "trace":
      return <Trace id={parts.slice(1).join("/")} />;
    case "silences":
      return <Silences />;
    case "events":
      return <Events />;
    case "members":
      return <Members />;
    case "backtest":
      return <Backtest />;
    default:
      return <p class="error">No page {path}. <a href="/" onClick={linkHandler("/")}>Board</a></p>;
  }
}

function App() {
  const loc = useLocation();
  const [conn, setConn] = useState<Connection>("connecting");
  const [showToken, setShowToken] = useState(false);
  useEffect(() => onConnection(setConn), []);
  const section = "/" + (loc.path.split("/")[1] || "");
  return (
    <>
      <header>
        <a class="brand" href="/" onClick={linkHandler("/")}>Vigil</a>
        <nav>
          {NAV.map(([href, label]) => (
            <a href={href} onClick={linkHandler(href)} class={section === href || (href === "/" && section === "/identity") ? "on" : ""}>{label}</a>
          ))}
        </nav>
        <span class={`conn conn-${conn}`} data-testid="connection" title="live stream">{conn}</span>
        <button type="button" class="link" onClick={() => setShowToken(!showToken)}>token</button>
        {showToken && (
          <form class="tokenform" onSubmit={(e) => {
            e.preventDefault();
            const value = ((e.target as HTMLFormElement).elements.namedItem("token") as HTMLInputElement).value;
            setToken(value.trim());
            setShowToken(false);
            reconnect();
            navigate(location.pathname + location.search);
          }}>
            <input name="token" type="password" placeholder="bearer token" value={token()} />
            <button type="submit">Save</button>
          </form>
        )}
      </header>
      <main>
        <Page path={loc.path} />
      </main>
    </>
  );
}

connect();
render(<App />, document.getElementById("app")!);
