using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Cfn.Hosting;

/// <summary>
/// A redis-server child process on loopback with its files in a temporary directory: the Redis of <c>cfn up</c> when it
/// is given none (D2), and the server a test owns when it must kill, restart or read server-wide counters of its Redis.
/// Without persistence it holds nothing worth saving, so stopping it is a kill; with persistence
/// (<c>appendonly yes, appendfsync always</c>) its data survives a kill and a restart on the same port and directory.
/// Disposal kills it and removes its directory. The test projects compile this same file, so there is one of it.
/// </summary>
internal sealed class PrivateRedisServer : IAsyncDisposable
{
    /// <summary>The one line printed when redis-server is missing.</summary>
    public const string MissingMessage = "redis-server is not installed: run `apt-get install -y redis-server` (or pass --redis HOST:PORT)";

    /// <summary>When a free port is chosen, another process may take it before redis-server binds it: tries this many.</summary>
    private const int FreePortAttempts = 5;

    private readonly string _executable;
    private readonly bool _persistent;
    private readonly TimeSpan _startTimeout;
    private Process? _process;

    private PrivateRedisServer(string executable, int port, string directory, bool persistent, TimeSpan startTimeout)
    {
        _executable = executable;
        Port = port;
        Directory = directory;
        _persistent = persistent;
        _startTimeout = startTimeout;
    }

    public int Port { get; }

    /// <summary>Its working directory (log, and the append-only file when persistent).</summary>
    public string Directory { get; }

    public string Endpoint => $"127.0.0.1:{Port}";

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The redis-server process ID while it runs (the bench reads its CPU time through it).</summary>
    public int? ProcessId => IsRunning ? _process!.Id : null;

    /// <summary>Starts redis-server on <paramref name="port"/> (0: a free one), without persistence, and waits until it answers.</summary>
    /// <exception cref="FileNotFoundException">redis-server is not installed (<see cref="MissingMessage"/>).</exception>
    /// <exception cref="InvalidOperationException">It did not start; the message has its last log lines.</exception>
    public static Task<PrivateRedisServer> StartAsync(int port, CancellationToken cancellationToken) =>
        StartAsync(port, persistent: false, TimeSpan.FromSeconds(10), cancellationToken);

    /// <summary>
    /// Starts redis-server on a free port and waits until it answers; <paramref name="persistent"/> makes every write
    /// durable before it is acknowledged, so a kill and <see cref="RestartAsync"/> lose nothing.
    /// </summary>
    public static Task<PrivateRedisServer> StartAsync(bool persistent = false) =>
        StartAsync(0, persistent, TimeSpan.FromSeconds(20), CancellationToken.None);

    private static async Task<PrivateRedisServer> StartAsync(int port, bool persistent, TimeSpan startTimeout, CancellationToken cancellationToken)
    {
        var executable = FindOnPath("redis-server") ?? throw new FileNotFoundException(MissingMessage);
        for (var attempt = 1; ; attempt++)
        {
            var directory = System.IO.Directory.CreateTempSubdirectory("cfn-redis-").FullName;
            var server = new PrivateRedisServer(executable, port > 0 ? port : FreePort(), directory, persistent, startTimeout);
            try
            {
                await server.RestartAsync(cancellationToken).ConfigureAwait(false);
                return server;
            }
            catch (InvalidOperationException) when (port == 0 && attempt < FreePortAttempts)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }

    /// <summary>Starts it (again) on the same port and directory, and waits until it answers PING.</summary>
    /// <exception cref="InvalidOperationException">It is already running, or did not start (the message has its last log lines).</exception>
    public async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        if (IsRunning)
        {
            throw new InvalidOperationException("redis-server is already running");
        }

        var start = new ProcessStartInfo(_executable,
            ["--port", Port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "",
             "--dir", Directory, "--logfile", Path.Combine(Directory, "redis.log"),
             .. _persistent ? (string[])["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        try
        {
            _process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        }
        catch (Win32Exception)
        {
            throw new FileNotFoundException(MissingMessage);
        }

        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < _startTimeout && !_process.HasExited)
        {
            if (await AnswersPingAsync(Port, cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            await Task.Delay(25, cancellationToken).ConfigureAwait(false);
        }

        Kill();
        throw new InvalidOperationException($"redis-server did not start on {Endpoint}: {LastLogLines()}");
    }

    /// <summary>Kills the server at once (SIGKILL): an outage, not a shutdown. It can be started again with <see cref="RestartAsync"/>.</summary>
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

    private static async Task<bool> AnswersPingAsync(int port, CancellationToken cancellationToken)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken).ConfigureAwait(false);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
            var buffer = new byte[16];
            // A server that accepted but never answers must not hold the start past its timeout.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var read = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
            return read >= 5 && Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException ||
                                  (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return false;
        }
    }

    private string LastLogLines()
    {
        var path = Path.Combine(Directory, "redis.log");
        return File.Exists(path) ? string.Join(" | ", File.ReadLines(path).TakeLast(3)) : "no log";
    }

    internal static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public ValueTask DisposeAsync()
    {
        // No persistence worth keeping, so nothing is lost by killing it outright.
        Kill();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover temp directory is harmless.
        }

        return ValueTask.CompletedTask;
    }
}
