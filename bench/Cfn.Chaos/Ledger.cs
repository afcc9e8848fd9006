using System.Collections.Concurrent;
using System.Net.Http;
using System.Text;

namespace Cfn.Chaos;

/// <summary>One enqueued item as the generator saw it.</summary>
public sealed record LedgerEntry(string WorkId, string Swarm, DateTimeOffset EnqueuedAt, int HttpStatus, string? Error)
{
    /// <summary>The swarm manager answered 200: the item is in the queue.</summary>
    public bool Accepted => HttpStatus == 200;
}

/// <summary>
/// The generator: enqueues items through the product's own API (<c>POST /api/swarms/{id}/work</c> on the swarm manager)
/// at a steady rate, alternating swarms, and records each in the ledger. A failed request is recorded too (with its
/// status or error) and is not retried: a retry with the same work ID could enqueue an item twice when the first
/// request did land, which would blur what the checker judges.
/// </summary>
public sealed class Ledger
{
    private readonly ConcurrentQueue<LedgerEntry> _entries = new();

    public IReadOnlyList<LedgerEntry> Entries => [.. _entries];

    internal async Task RunAsync(HttpClient http, int managerPort, IReadOnlyList<string> swarms, double rate, CancellationToken stop)
    {
        var period = TimeSpan.FromSeconds(1 / rate);
        var started = DateTime.UtcNow;
        var sequence = 0;
        var inFlight = new List<Task>();
        while (!stop.IsCancellationRequested)
        {
            var swarm = swarms[sequence % swarms.Count];
            var workId = $"chaos-{sequence + 1:D6}";
            sequence++;
            // Requests are not awaited one by one: a slow answer (Redis restarting) must not slow the steady rate.
            inFlight.Add(EnqueueAsync(http, managerPort, swarm, workId));
            inFlight.RemoveAll(t => t.IsCompleted);
            var next = started + (period * sequence);
            var wait = next - DateTime.UtcNow;
            if (wait > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(wait, stop);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

        await Task.WhenAll(inFlight);
    }

    private async Task EnqueueAsync(HttpClient http, int managerPort, string swarm, string workId)
    {
        var at = DateTimeOffset.UtcNow;
        var body = $"{{\"workId\":\"{workId}\",\"input\":{{\"chaos\":true,\"n\":\"{workId}\"}}}}";
        try
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.PostAsync(new Uri($"http://127.0.0.1:{managerPort}/api/swarms/{swarm}/work"), content);
            var error = response.IsSuccessStatusCode ? null : await response.Content.ReadAsStringAsync();
            _entries.Enqueue(new LedgerEntry(workId, swarm, at, (int)response.StatusCode, error));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            _entries.Enqueue(new LedgerEntry(workId, swarm, at, 0, e.Message));
        }
    }
}
