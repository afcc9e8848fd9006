using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Cfn.Bench;

/// <summary>
/// The <c>cfn</c> executable built beside the bench (a project reference), started on the bench's database and secret:
/// rows i (agent verbs, an HTTP agent session) and j (the dashboard's event stream) run it.
/// </summary>
internal static class CfnExecutable
{
    /// <summary>Starts <c>dotnet cfn.dll ARGS</c> with the bench's Redis and secret and <paramref name="env"/>; <paramref name="row"/> names the row in errors.</summary>
    public static Process Start(BenchContext ctx, string row, string[] args, Dictionary<string, string> env)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cfn.dll"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        var endpoint = ctx.Configuration.Split(',')[0];
        start.Environment["REDIS_URL"] = $"redis://{endpoint}/{ctx.DatabaseIndex}";
        start.Environment["BLOCKING_COORDINATION_SECRET"] = BenchContext.Secret;
        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        return Process.Start(start) ?? throw new InvalidOperationException($"row {row}: cfn did not start");
    }

    /// <summary>Waits until <c>cfn serve</c> answers <c>/health/ready</c> (60 s at most), draining its output meanwhile.</summary>
    public static async Task WaitReadyAsync(HttpClient http, Process serve, string row)
    {
        // Its output is drained so that a chatty process never blocks on a full pipe.
        _ = serve.StandardOutput.ReadToEndAsync();
        _ = serve.StandardError.ReadToEndAsync();
        for (var i = 0; i < 600; i++)
        {
            if (serve.HasExited)
            {
                throw new InvalidOperationException($"row {row}: cfn serve exited with {serve.ExitCode}");
            }

            try
            {
                if ((await http.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"row {row}: cfn serve was not ready within 60 s");
    }

    /// <summary>A loopback port free now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
