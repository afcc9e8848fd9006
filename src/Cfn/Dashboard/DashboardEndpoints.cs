using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using Cfn.Api;
using Cfn.Coordination.Inspection;

namespace Cfn.Dashboard;

/// <summary>
/// The live dashboard (issue 15): the page at <c>/</c> with its script and style (embedded in this executable: no CDN,
/// no network), the snapshot at <c>/api/dashboard/snapshot</c>, and Server-Sent Events at <c>/api/dashboard/events</c>
/// fed by the process's one <see cref="LiveView"/>. The page's actions call the admin endpoints, which keep their own
/// rules (D12, D20); the dashboard adds no way in of its own.
/// </summary>
internal static class DashboardEndpoints
{
    /// <summary>Open event streams one process serves at most; more get 503 (each is a connection and a queue).</summary>
    public const int MaxStreams = 200;

    /// <summary>Events queued for one slow page before the oldest are dropped (the next snapshot repairs the page).</summary>
    private const int StreamQueue = 64;

    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);

    // Only the page's own files: no inline script or style, nothing fetched from elsewhere.
    private const string Policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
                                  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

    // One encoded frame per data string, shared by every page (see WriteAsync).
    private static readonly ConditionalWeakTable<string, byte[]> Frames = [];

    private static int _streams;

    public static void MapDashboard(this WebApplication app, LiveView view)
    {
        app.MapGet("/", (HttpContext http) => Asset(http, "index.html", "text/html; charset=utf-8"));
        app.MapGet("/dashboard/app.js", (HttpContext http) => Asset(http, "app.js", "text/javascript; charset=utf-8"));
        app.MapGet("/dashboard/app.css", (HttpContext http) => Asset(http, "app.css", "text/css; charset=utf-8"));
        // Browsers ask for it on their own; a 404 would be a console error on every first visit.
        app.MapGet("/favicon.ico", () => Results.NoContent());
        var api = app.MapApiGroup("/api/dashboard");
        api.MapGet("/snapshot", () => Results.Text(view.SnapshotJson, "application/json", Encoding.UTF8));
        api.MapGet("/events", (HttpContext http) => StreamAsync(http, view));
    }

    private static IResult Asset(HttpContext http, string name, string contentType)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("dashboard/" + name);
        if (stream is null)
        {
            return ApiErrors.Error(StatusCodes.Status404NotFound, $"dashboard asset {name} is not in this build", "NOT_FOUND");
        }

        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        var headers = http.Response.Headers;
        headers.ContentSecurityPolicy = Policy;
        headers.XContentTypeOptions = "nosniff";
        headers.CacheControl = "no-cache";
        headers["Referrer-Policy"] = "no-referrer";
        return Results.Bytes(memory.ToArray(), contentType);
    }

    /// <summary>
    /// One page's stream: the kept timeline and the current snapshot at once, then whatever the view publishes, and a
    /// comment every 15 s so proxies keep the connection. A page that reads too slowly loses old events, not the process's
    /// memory.
    /// </summary>
    private static async Task StreamAsync(HttpContext http, LiveView view)
    {
        if (Interlocked.Increment(ref _streams) > MaxStreams)
        {
            Interlocked.Decrement(ref _streams);
            await ApiErrors.Error(StatusCodes.Status503ServiceUnavailable, $"more than {MaxStreams} dashboard streams are open", "TOO_MANY_STREAMS")
                .ExecuteAsync(http).ConfigureAwait(false);
            return;
        }

        try
        {
            var queue = Channel.CreateBounded<(string Event, string Data)>(new BoundedChannelOptions(StreamQueue)
            {
                FullMode = BoundedChannelFullMode.DropOldest,
                SingleReader = true,
            });
            using var subscription = view.Subscribe((name, data) => queue.Writer.TryWrite((name, data)));
            var response = http.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no";
            var aborted = http.RequestAborted;
            foreach (var entry in view.Timeline)
            {
                await WriteAsync(response, "timeline", entry, aborted).ConfigureAwait(false);
            }

            await WriteAsync(response, "snapshot", view.SnapshotJson, aborted).ConfigureAwait(false);
            await response.Body.FlushAsync(aborted).ConfigureAwait(false);
            while (!aborted.IsCancellationRequested)
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(aborted);
                wait.CancelAfter(KeepAlive);
                try
                {
                    var next = await queue.Reader.ReadAsync(wait.Token).ConfigureAwait(false);
                    await WriteAsync(response, next.Event, next.Data, aborted).ConfigureAwait(false);
                    while (queue.Reader.TryRead(out next))
                    {
                        await WriteAsync(response, next.Event, next.Data, aborted).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
                {
                    await response.WriteAsync(": keep-alive\n\n", aborted).ConfigureAwait(false);
                }

                await response.Body.FlushAsync(aborted).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // the page went away
        }
        finally
        {
            Interlocked.Decrement(ref _streams);
        }
    }

    /// <summary>
    /// Writes one event. Every page gets the very same data strings from the view, so each frame is encoded once and its
    /// bytes shared by every page (at 1,000 coordinators a snapshot is about 300 KB).
    /// </summary>
    private static async Task WriteAsync(HttpResponse response, string name, string data, CancellationToken cancellationToken) =>
        await response.Body.WriteAsync(Frames.GetValue(data, d => Encoding.UTF8.GetBytes($"event: {name}\ndata: {d}\n\n")), cancellationToken)
            .ConfigureAwait(false);
}
