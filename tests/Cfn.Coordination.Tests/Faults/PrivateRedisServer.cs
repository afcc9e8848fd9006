using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// A redis-server child process on a free loopback port, owned by one test: it can be killed and restarted on the
/// same port and directory (with <c>appendonly yes, appendfsync always</c> when persistent, so its data survives).
/// Disposal kills it and removes its directory.
/// </summary>
internal sealed class PrivateRedisServer : IAsyncDisposable
{
    private readonly bool _persistent;
    private Process? _process;

    private PrivateRedisServer(int port, string dir, bool persistent)
    {
        Port = port;
        Dir = dir;
        _persistent = persistent;
    }

    public int Port { get; }

    public string Dir { get; }

    public string Endpoint => "127.0.0.1:" + Port.ToString(CultureInfo.InvariantCulture);

    public bool IsRunning => _process is { HasExited: false };

    public static async Task<PrivateRedisServer> StartAsync(bool persistent = false)
    {
        var dir = Directory.CreateTempSubdirectory("cfn-faults-redis-").FullName;
        for (var attempt = 0; ; attempt++)
        {
            var server = new PrivateRedisServer(FreePort(), dir, persistent);
            try
            {
                await server.RestartAsync();
                return server;
            }
            catch (InvalidOperationException) when (attempt < 5)
            {
                server.Kill(); // the port was taken meanwhile: try another
            }
        }
    }

    /// <summary>Starts (again) on the same port and directory, and waits until it answers PING.</summary>
    public async Task RestartAsync()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException("redis-server is already running");
        }

        var start = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        string[] args =
        [
            "--port", Port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--daemonize", "no", "--save", "",
            "--dir", Dir, "--logfile", Path.Combine(Dir, "redis.log"),
            "--appendonly", _persistent ? "yes" : "no", "--appendfsync", "always",
        ];
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException("could not start redis-server");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"redis-server exited with {_process.ExitCode} on port {Port}");
            }

            if (await PingAsync())
            {
                return;
            }

            await Task.Delay(25);
        }

        throw new InvalidOperationException($"redis-server did not answer PING on port {Port} within 20 s");
    }

    /// <summary>Kills the server at once (SIGKILL): an outage, not a shutdown.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process?.Dispose();
        _process = null;
    }

    /// <summary>A connection for the test's own inspection (admin commands allowed).</summary>
    public Task<ConnectionMultiplexer> ConnectAsync() =>
        ConnectionMultiplexer.ConnectAsync(Endpoint + ",allowAdmin=true,abortConnect=false");

    public ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return ValueTask.CompletedTask;
    }

    private async Task<bool> PingAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, Port);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray());
            var buffer = new byte[64];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            var read = await stream.ReadAsync(buffer, timeout.Token);
            return Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
