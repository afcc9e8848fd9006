using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Cfn.Chaos;

/// <summary>
/// The run's private redis-server: loopback, a free port, AOF on with fsync on every write (so a restart loses nothing
/// that was acknowledged). <see cref="RestartAsync"/> stops it with SIGTERM and starts it again on the same port and
/// AOF directory, as a Redis pod restart would; the cfn processes reconnect by themselves.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private readonly string _directory;
    private Process? _process;

    private RedisServer(int port, string directory)
    {
        Port = port;
        _directory = directory;
    }

    public int Port { get; }

    public string Endpoint => $"127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync(string directory)
    {
        Directory.CreateDirectory(directory);
        var server = new RedisServer(FreePort(), directory);
        await server.LaunchAsync();
        return server;
    }

    /// <summary>SIGTERM, wait for the exit (AOF flushed), start again; returns how long Redis was unreachable.</summary>
    public async Task<TimeSpan> RestartAsync()
    {
        var down = Stopwatch.StartNew();
        await StopAsync();
        await LaunchAsync();
        return down.Elapsed;
    }

    private async Task LaunchAsync()
    {
        var start = new ProcessStartInfo("redis-server")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[]
                 {
                     "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                     "--dir", _directory, "--logfile", Path.Combine(_directory, "redis.log"), "--daemonize", "no",
                 })
        {
            start.ArgumentList.Add(arg);
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start (is it installed? apt-get install -y redis-server)");
        _process.StandardOutput.ReadToEndAsync().ContinueWith(_ => { }, TaskScheduler.Default).GetAwaiter();
        _process.StandardError.ReadToEndAsync().ContinueWith(_ => { }, TaskScheduler.Default).GetAwaiter();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"redis-server exited with {_process.ExitCode}; see {Path.Combine(_directory, "redis.log")}");
            }

            if (await PingsAsync())
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new InvalidOperationException($"redis-server on port {Port} did not answer within 20 s");
    }

    private async Task<bool> PingsAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, Port);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray());
            var buffer = new byte[16];
            var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(1));
            return read >= 5 && buffer[0] == (byte)'+';
        }
        catch (Exception e) when (e is SocketException or IOException or TimeoutException)
        {
            return false;
        }
    }

    private async Task StopAsync()
    {
        if (_process is null || _process.HasExited)
        {
            return;
        }

        Posix.Send(_process.Id, Posix.SigTerm);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        _process = null;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
