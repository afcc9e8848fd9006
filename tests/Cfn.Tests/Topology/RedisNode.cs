using System.Diagnostics;

namespace Cfn.Tests.Topology;

/// <summary>
/// One real redis-server (or sentinel: <c>redis-server … --sentinel</c>, as Debian's redis-sentinel is that binary) on
/// loopback, started by a test in a folder of its own and killed when disposed. Ready once its log says it accepts
/// connections, which also works for a TLS-only server that <c>redis-cli</c> could not ping without certificates.
/// </summary>
internal sealed class RedisNode : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _log;

    private RedisNode(Process process, int port, string log)
    {
        _process = process;
        Port = port;
        _log = log;
    }

    public int Port { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Starts a server on <paramref name="port"/> with <paramref name="arguments"/> (config-file lines as <c>--name value</c>).</summary>
    public static async Task<RedisNode> StartAsync(string folder, int port, IEnumerable<string> arguments, string? configFile = null, bool sentinel = false)
    {
        Directory.CreateDirectory(folder);
        var log = Path.Combine(folder, $"redis-{port}.log");
        var start = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (configFile is not null)
        {
            start.ArgumentList.Add(configFile);
        }

        foreach (var argument in new[] { "--bind", "127.0.0.1", "--dir", folder, "--logfile", log, "--daemonize", "no" }.Concat(arguments))
        {
            start.ArgumentList.Add(argument);
        }

        if (sentinel)
        {
            start.ArgumentList.Add("--sentinel");
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        var node = new RedisNode(process, port, log);
        // A sentinel never says "Ready"; it is ready once it monitors its primary.
        var marker = sentinel ? "+monitor master" : "Ready to accept connections";
        var ready = await EventuallyAsync(() => Task.FromResult(process.HasExited || (File.Exists(log) && File.ReadAllText(log).Contains(marker, StringComparison.Ordinal))),
            TimeSpan.FromSeconds(20), pollMs: 50);
        if (!ready || process.HasExited)
        {
            var text = File.Exists(log) ? File.ReadAllText(log) : "(no log)";
            await node.DisposeAsync();
            throw new InvalidOperationException($"redis-server on {port} did not become ready:\n{text}");
        }

        return node;
    }

    /// <summary>Kills the server outright (SIGKILL): no shutdown, no save.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
    }

    public string Log => File.Exists(_log) ? File.ReadAllText(_log) : "";

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}
