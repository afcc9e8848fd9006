using System.CommandLine;
using System.Security.Cryptography;
using Cfn.Coordination;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Security;
using Cfn.Hosting;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn up</c>: every role in one process with a working swarm, for trying cfn out (D1, D2). Without <c>--redis</c> it
/// runs its own redis-server child on loopback and stops it on exit; without <c>BLOCKING_COORDINATION_SECRET</c> it
/// generates one and says so (D12). It reads the same environment variables as <c>serve</c>.
/// </summary>
internal static class UpCommand
{
    public static Command Create()
    {
        var redis = new Option<string?>("--redis") { Description = "Use this Redis (HOST:PORT) instead of starting a private redis-server" };
        var redisPort = new Option<int>("--redis-port") { Description = "Port of the private redis-server (default: a free one)", DefaultValueFactory = _ => 0 };
        var httpPort = new Option<int?>("--http-port") { Description = "HTTP port of every endpoint (default: HTTP_PORT or 8080)" };
        var swarms = new Option<int>("--swarms") { Description = "Number of swarms", DefaultValueFactory = _ => 2 };
        var coordinators = new Option<int>("--coordinators") { Description = "Coordinators per swarm", DefaultValueFactory = _ => 3 };
        var validators = new Option<int>("--validators") { Description = "Validators", DefaultValueFactory = _ => 3 };
        foreach (var option in new[] { swarms, coordinators, validators })
        {
            option.Validators.Add(r =>
            {
                if (r.GetValueOrDefault<int>() is < 1 or > 100)
                {
                    r.AddError($"{option.Name} must be from 1 to 100");
                }
            });
        }

        foreach (var option in new Option[] { redisPort, httpPort })
        {
            option.Validators.Add(r =>
            {
                if (r.Tokens.Count > 0 && (!int.TryParse(r.Tokens[0].Value, out var p) || p is < 0 or > 65535))
                {
                    r.AddError($"{option.Name} must be a port from 1 to 65535");
                }
            });
        }

        var command = new Command("up", "Run every role in one process with a working swarm (and a private redis-server unless --redis is given).")
        {
            redis, redisPort, httpPort, swarms, coordinators, validators,
        };
        command.SetAction(async (result, cancellationToken) => await RunAsync(
            result.GetValue(redis), result.GetValue(redisPort), result.GetValue(httpPort),
            new UpShape(result.GetValue(swarms), result.GetValue(coordinators), result.GetValue(validators)),
            cancellationToken).ConfigureAwait(false));
        return command;
    }

    private static async Task<int> RunAsync(string? redisOption, int redisPort, int? httpPort, UpShape shape, CancellationToken cancellationToken)
    {
        CfnConfiguration config;
        try
        {
            config = CfnConfiguration.Load(secretRequired: false);
        }
        catch (CfnConfigurationException e)
        {
            await Console.Error.WriteLineAsync("configuration error: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        var environmentRedis = Environment.GetEnvironmentVariable("REDIS_URL") is { Length: > 0 } ||
                               Environment.GetEnvironmentVariable("REDIS_HOST") is { Length: > 0 };
        PrivateRedisServer? privateRedis = null;
        try
        {
            if (redisOption is not null)
            {
                config = config with { Redis = RedisSettings.FromUrl(redisOption).WithTlsFiles() };
            }
            else if (!environmentRedis)
            {
                try
                {
                    privateRedis = await PrivateRedisServer.StartAsync(redisPort, cancellationToken).ConfigureAwait(false);
                }
                catch (FileNotFoundException e)
                {
                    await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
                    return 1;
                }
                catch (InvalidOperationException e)
                {
                    await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
                    return 1;
                }

                config = config with { Redis = new RedisSettings("127.0.0.1", privateRedis.Port, privateRedis.Password, 0) };
            }
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync("--redis: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        await using var ownedRedis = privateRedis;
        if (config.Keys is null)
        {
            config = config with { Keys = new SigningKeys(RandomNumberGenerator.GetHexString(64, lowercase: true)) };
            Console.Out.WriteLine("secret: generated for this run (set BLOCKING_COORDINATION_SECRET to share one with other processes)");
        }

        if (httpPort is { } port)
        {
            config = config with { HttpPort = port };
        }

        var redisLine = $"{config.Redis.Host}:{config.Redis.Port}";
        // The endpoint stays the line's second word (scripts and tests take it from there). The password is printed for
        // the operator's redis-cli: it guards the private server against other local users, not against whoever reads
        // this terminal.
        Console.Out.WriteLine($"redis: {redisLine}" + (privateRedis is null ? "" :
            $" (private redis-server, stopped on exit; password {privateRedis.Password}; pid {privateRedis.ProcessId})"));
        // Before the log lines start: the first thing to open.
        Console.Out.WriteLine($"dashboard: http://127.0.0.1:{config.HttpPort}/ (live view of the swarms; open it in a browser)");
        var process = new CfnProcess(config, new ProcessPlan
        {
            Coordinator = true, Validator = true, SwarmManager = true, TimeoutHandler = true, Up = shape, BindAddress = "127.0.0.1",
        })
        {
            OnReady = http => Announce(http, config.Redis, privateRedis?.Password),
        };
        return await process.RunAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The ready lines; <paramref name="privatePassword"/> is the private redis-server's, shown for redis-cli (a given Redis's password is not printed).</summary>
    private static void Announce(Uri http, RedisSettings redis, string? privatePassword)
    {
        var h = http.ToString().TrimEnd('/');
        var cli = $"redis-cli -h {redis.Host} -p {redis.Port}" + (redis.Database != 0 ? $" -n {redis.Database}" : "");
        Console.Out.WriteLine($"http: {h}");
        Console.Out.WriteLine("try:");
        if (privatePassword is not null)
        {
            // redis-cli reads REDISCLI_AUTH, so the commands below (and the runbook's) stay as they are.
            Console.Out.WriteLine($"  export REDISCLI_AUTH={privatePassword}");
        }

        Console.Out.WriteLine($"  curl -s {h}/api/swarms/status | jq '.swarms[] | {{swarmId, coordinatorCount}}'");
        Console.Out.WriteLine($"  {cli} --scan --pattern \"{CoordinationInspector.HeartbeatKeyPattern}\"");
        Console.Out.WriteLine($"  {cli} --scan --pattern \"{CoordinationInspector.ActivityKeyPattern}\" | while read key; do {cli} get $key | jq -c '{{coordinatorId, status, waitingFor}}'; done");
        Console.Out.WriteLine($"  curl -s {h}/api/validators/performance | jq .");
        Console.Out.WriteLine($"  curl -s {h}/metrics | grep ^blocking_");
        Console.Out.WriteLine($"  curl -s -X POST {h}/api/timeouts/force-unblock-all");
        Console.Out.WriteLine("  kill -3 " + Environment.ProcessId + "   # diagnostic dump on stdout; cfn keeps running");
        Console.Out.WriteLine("ready");
        Console.Out.Flush();
    }
}
